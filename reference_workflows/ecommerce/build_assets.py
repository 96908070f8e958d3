"""Build the shop's static bundle: ``static/app.css`` and ``static/app.js``.

    python -m reference_workflows.ecommerce.build_assets

A young shop ships what its build tool emits: an un-purged utility stylesheet (every
spacing, colour and breakpoint variant, ~190 KB) and an unminified script that inlines its
icon set and every locale's strings (~290 KB). The output is deterministic and committed;
re-run this after editing the hand-written parts below.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_SEED = 7
SPACING = {"0": "0", "px": "1px", **{str(n): f"{n / 4:g}rem" for n in range(1, 97)}}
SPACING_PROPS = {"m": ["margin"], "mt": ["margin-top"], "mr": ["margin-right"], "mb": ["margin-bottom"],
                 "ml": ["margin-left"], "mx": ["margin-left", "margin-right"],
                 "my": ["margin-top", "margin-bottom"], "p": ["padding"], "pt": ["padding-top"],
                 "pr": ["padding-right"], "pb": ["padding-bottom"], "pl": ["padding-left"],
                 "px": ["padding-left", "padding-right"], "py": ["padding-top", "padding-bottom"]}
COLOURS = ["slate", "gray", "red", "orange", "amber", "green", "teal", "sky", "blue", "indigo",
           "violet", "pink"]
SHADES = [50, 100, 200, 300, 400, 500, 600, 700, 800, 900]
BREAKPOINTS = {"sm": 640, "md": 768}
LOCALES = ["en", "de", "fr", "es", "it", "pt", "nl", "pl"]
N_MESSAGES = 260
N_ICONS = 240

BASE_CSS = """/* Young Shop: base styles */
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2933;background:#fafafa}
a{color:#0b6bcb;text-decoration:none}
.site-header{display:flex;align-items:center;gap:2rem;padding:1rem 2rem;background:#111827;color:#fff}
.site-header .logo{color:#fff;font-weight:700;font-size:1.25rem}
.search input{padding:.5rem .75rem;border-radius:.375rem;border:0;width:24rem}
.categories{display:flex;flex-wrap:wrap;gap:.5rem 1rem;padding:.75rem 2rem;background:#f3f4f6;font-size:.875rem}
main{padding:2rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:1.5rem}
.card{background:#fff;border-radius:.5rem;padding:1rem;box-shadow:0 1px 3px rgba(0,0,0,.1)}
.card h3{margin:0 0 .5rem;font-size:1rem}
.price{font-weight:700;color:#047857}
.add-to-cart{background:#0b6bcb;color:#fff;border:0;border-radius:.375rem;padding:.5rem 1rem;cursor:pointer}
.reviews{list-style:none;padding:0}
.review{border-bottom:1px solid #e5e7eb;padding:.75rem 0}
.stars{color:#f59e0b}
.site-footer{padding:2rem;color:#6b7280;font-size:.875rem;text-align:center}
"""

APP_JS = """/* Young Shop: storefront script */
(function () {
  "use strict";
  var locale = (navigator.language || "en").slice(0, 2);
  var messages = SHOP_MESSAGES[locale] || SHOP_MESSAGES.en;

  function icon(name) {
    var path = SHOP_ICONS[name];
    return path ? '<svg viewBox="0 0 24 24" class="icon"><path d="' + path + '"/></svg>' : "";
  }

  function toast(text) {
    var el = document.createElement("div");
    el.className = "toast";
    el.innerHTML = icon("check") + " " + text;
    document.body.appendChild(el);
    setTimeout(function () { el.remove(); }, 2500);
  }

  function customerId() {
    var id = localStorage.getItem("customer_id");
    if (!id) {
      id = String(1 + Math.floor(Math.random() * 20000));
      localStorage.setItem("customer_id", id);
    }
    return Number(id);
  }

  function addToCart(productId) {
    return fetch("/api/cart/items", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({customer_id: customerId(), product_id: productId, quantity: 1})
    }).then(function (r) { return r.json(); }).then(function (cart) {
      toast(messages.added_to_cart.replace("{n}", cart.units));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest(".add-to-cart");
    if (button) { addToCart(Number(button.dataset.product)); }
  });
})();
"""


def utility_rules() -> list[str]:
    rules = []
    for short, props in SPACING_PROPS.items():
        for key, value in SPACING.items():
            rules.append(f".{short}-{key}{{{';'.join(f'{p}:{value}' for p in props)}}}")
    rng = random.Random(ASSET_SEED)
    for colour in COLOURS:
        for shade in SHADES:
            hex_value = f"#{rng.randrange(0x1000000):06x}"
            rules += [f".text-{colour}-{shade}{{color:{hex_value}}}",
                      f".bg-{colour}-{shade}{{background-color:{hex_value}}}",
                      f".border-{colour}-{shade}{{border-color:{hex_value}}}"]
    return rules


def build_css() -> str:
    rules = utility_rules()
    out = [BASE_CSS, "/* utilities */", *rules]
    for name, width in BREAKPOINTS.items():
        out.append(f"@media (min-width:{width}px){{")
        out += [f".{name}\\:{rule[1:]}" for rule in rules]
        out.append("}")
    return "\n".join(out) + "\n"


def build_js() -> str:
    rng = random.Random(ASSET_SEED)
    words = ["cart", "checkout", "order", "product", "review", "shipping", "account", "search",
             "payment", "delivery", "return", "wishlist", "coupon", "size", "colour", "stock"]
    keys = ["added_to_cart"] + [f"{rng.choice(words)}_{rng.choice(words)}_{i}" for i in range(N_MESSAGES)]
    messages = {}
    for locale in LOCALES:
        table = {"added_to_cart": f"[{locale}] Added to cart ({{n}} items)"}
        for key in keys[1:]:
            table[key] = f"[{locale}] " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize()
        messages[locale] = table
    icons = {"check": "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z"}
    for i in range(N_ICONS):
        points = " ".join(f"L{rng.uniform(0, 24):.3f} {rng.uniform(0, 24):.3f}" for _ in range(rng.randint(12, 40)))
        icons[f"icon-{i}"] = f"M{rng.uniform(0, 24):.3f} {rng.uniform(0, 24):.3f} {points} Z"
    return ("/* inlined at build time: every locale and the whole icon set */\n"
            f"var SHOP_MESSAGES = {json.dumps(messages, indent=2)};\n"
            f"var SHOP_ICONS = {json.dumps(icons, indent=2)};\n" + APP_JS)


def build_assets(static_dir: Path = STATIC_DIR) -> dict[str, int]:
    static_dir.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, text in (("app.css", build_css()), ("app.js", build_js())):
        (static_dir / name).write_text(text)
        sizes[name] = len(text.encode())
    return sizes


if __name__ == "__main__":
    for asset, size in build_assets().items():
        print(f"{asset}: {size} bytes")
