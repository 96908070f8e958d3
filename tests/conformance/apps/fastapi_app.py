"""The matrix app in FastAPI with the SQLAlchemy ORM on SQLite (APP_DB); serve under uvicorn.

GET /events?city=cN   select(Event).where(Event.city == ...): no index on city (planted)
GET /events/recent    the 20 latest events, ``event.venue`` lazy-loaded for each (planted N+1)
Sync endpoints: FastAPI runs them in its thread pool.
"""

import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

engine = create_engine("sqlite:///" + os.environ["APP_DB"], connect_args={"check_same_thread": False})


class Base(DeclarativeBase):
    pass


class Venue(Base):
    __tablename__ = "venues"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    city: Mapped[str]
    title: Mapped[str]
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    venue: Mapped[Venue] = relationship(lazy="select")


app = FastAPI()


@app.get("/events")
def events(city: str = "c1"):
    with Session(engine) as session:
        rows = session.scalars(select(Event).where(Event.city == city)).all()
        return [{"id": e.id, "title": e.title} for e in rows]


@app.get("/events/recent")
def recent():
    with Session(engine) as session:
        rows = session.scalars(select(Event).order_by(Event.id.desc()).limit(20)).all()
        return [{"id": e.id, "venue": e.venue.name} for e in rows]


@app.get("/health", response_class=PlainTextResponse)
def health():
    return "ok"
