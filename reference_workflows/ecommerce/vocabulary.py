"""Words the seed builds names and texts from, and the locustfile draws search queries from."""

from __future__ import annotations

import random

ADJECTIVES = [
    "wireless", "compact", "classic", "premium", "portable", "organic", "vintage", "smart",
    "ergonomic", "waterproof", "lightweight", "deluxe", "rustic", "modern", "foldable",
    "ultra", "eco", "heavy-duty", "minimalist", "handmade", "adjustable", "insulated",
    "rechargeable", "stainless", "cordless", "bamboo", "ceramic", "leather", "cotton",
    "wooden",
]
MATERIALS = [
    "steel", "oak", "walnut", "linen", "wool", "silicone", "glass", "copper", "carbon",
    "canvas", "marble", "titanium", "aluminum", "suede", "cork", "velvet", "denim", "slate",
    "brass", "nylon",
]
NOUNS = [
    "headphones", "backpack", "kettle", "lamp", "chair", "desk", "mug", "blender", "jacket",
    "sneakers", "watch", "speaker", "keyboard", "mouse", "monitor", "tent", "bottle", "pan",
    "knife", "blanket", "pillow", "scarf", "wallet", "sunglasses", "umbrella", "charger",
    "camera", "tripod", "notebook", "pen", "planter", "rug", "shelf", "toaster", "grinder",
    "bicycle", "helmet", "gloves", "boots", "hoodie",
]
CATEGORY_GROUPS = [
    "Electronics", "Home", "Kitchen", "Outdoor", "Fashion", "Office", "Sports", "Garden",
    "Travel", "Beauty",
]
CATEGORY_SUFFIXES = [
    "Essentials", "Accessories", "Bestsellers", "Classics", "New Arrivals", "Pro", "Basics",
    "Deals", "Gifts", "Outlet",
]
DESCRIPTION_SENTENCES = [
    "Designed for everyday use and built to last.",
    "Made from responsibly sourced materials.",
    "Our customers love the attention to detail.",
    "Ships in recyclable packaging.",
    "Backed by a two-year warranty.",
    "A favourite of professionals and hobbyists alike.",
    "Easy to clean and simple to maintain.",
    "Fits perfectly into small apartments.",
    "Tested in our lab for over a thousand hours.",
    "Pairs well with the rest of the collection.",
    "Available in several colours while stocks last.",
    "Lightweight enough to carry anywhere.",
    "Assembled by hand in small batches.",
    "The upgrade you did not know you needed.",
    "Quiet, efficient and energy saving.",
    "Comes with everything you need to get started.",
]
REVIEW_SENTENCES = [
    "Exactly as described.", "Arrived quickly and well packed.", "Great value for the money.",
    "The quality surprised me.", "Would buy again.", "A bit smaller than I expected.",
    "My partner uses it every day.", "Customer service was very helpful.",
    "Stopped working after a month.", "Looks even better in person.",
    "The colour is slightly different from the photos.", "Five stars, no complaints.",
    "Instructions could be clearer.", "Solid build, feels premium.",
    "Perfect gift for my parents.", "Not worth the price in my opinion.",
    "Battery life is impressive.", "Comfortable and stylish.", "Took a while to set up.",
    "Better than the expensive brands.",
]
FIRST_NAMES = [
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Keira", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe",
]
LAST_NAMES = [
    "Anders", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Huang", "Ito",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Olsen", "Petrov", "Quist", "Rossi",
    "Silva", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
]
CITIES = [
    "Lisbon", "Berlin", "Osaka", "Toronto", "Lyon", "Austin", "Krakow", "Seoul", "Porto",
    "Melbourne", "Dublin", "Nairobi", "Bogota", "Oslo", "Vienna", "Denver",
]
STREETS = ["Main St", "Oak Ave", "Station Rd", "High St", "Park Ln", "River Rd", "Mill Way"]
ORDER_STATUSES = ["delivered", "delivered", "delivered", "shipped", "pending", "cancelled"]
PAYMENT_METHODS = ["card", "card", "paypal", "bank_transfer"]
# what shoppers type into the search box
SEARCH_TERMS = ADJECTIVES + MATERIALS + NOUNS
TWO_TERM_SHARE = 0.5  # of queries have two terms, the rest one
POPULAR_SEED = 20261126  # the same popular queries in every Locust process and run


def random_query(rng: random.Random) -> str:
    """One or two distinct search terms, joined as in the query string ('wireless+kettle')."""
    return "+".join(rng.sample(SEARCH_TERMS, 2 if rng.random() < TWO_TERM_SHARE else 1))


def popular_queries(n: int, seed: int = POPULAR_SEED) -> list[str]:
    """``n`` distinct queries, most popular first (the same ones for a given seed)."""
    rng, queries = random.Random(seed), dict[str, None]()
    while len(queries) < n:
        queries[random_query(rng)] = None
    return list(queries)


def zipf_weights(n: int, s: float) -> list[float]:
    """Relative frequency of ranks 1..n when the k-th most popular is drawn in proportion to 1/k**s."""
    return [1.0 / rank**s for rank in range(1, n + 1)]
