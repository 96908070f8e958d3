"""The matrix app in Django (ORM on SQLite, APP_DB), one file; serve ``django_app:application``.

GET /events?city=cN   Event.objects.filter(city=...): events.city has no index (planted)
GET /events/recent    the 20 latest events and ``event.venue.name`` each: the ORM's N+1 (planted)
"""

import os

import django
from django.conf import settings
from django.db import models
from django.http import HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="matrix", USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes"], MIDDLEWARE=[],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DB"]}},
)
django.setup()


class Venue(models.Model):
    name = models.TextField()

    class Meta:
        app_label = "matrix"
        db_table = "venues"
        managed = False


class Event(models.Model):
    city = models.TextField()
    title = models.TextField()
    venue = models.ForeignKey(Venue, on_delete=models.DO_NOTHING)

    class Meta:
        app_label = "matrix"
        db_table = "events"
        managed = False


def events(request):
    rows = Event.objects.filter(city=request.GET.get("city", "c1"))
    return JsonResponse([{"id": e.id, "title": e.title} for e in rows], safe=False)


def recent(request):
    rows = Event.objects.order_by("-id")[:20]
    return JsonResponse([{"id": e.id, "venue": e.venue.name} for e in rows], safe=False)


def health(request):
    return HttpResponse("ok")


urlpatterns = [path("events", events), path("events/recent", recent), path("health", health)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
