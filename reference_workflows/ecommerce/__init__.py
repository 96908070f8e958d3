"""The e-commerce reference target: a young shop with the bottlenecks young shops have.

- ``seed``: deterministic SQLite data (``python -m reference_workflows.ecommerce.seed --db PATH``)
- ``app``: the ASGI app and its uvicorn server (``python -m reference_workflows.ecommerce.app --port N``)
- ``routes``, ``pages``: HTTP handlers and HTML; ``catalog``, ``orders``, ``search``: the data
  and the planted N+1, missing index and CPU hot spot; ``db``: connections and pragmas
- ``live_config``, ``response_cache``: the live cache TTL shared by all workers, the cache
- ``locustfile``: the load mix; ``build_assets``: the static bundle
- ``measure_bottlenecks`` (with ``shop_process``): re-makes the numbers in BOTTLENECKS.md
"""
