"""swaplora's HTTP server: Starlette routes, auth, the async scheduler and the model engine.

Import direction inside this package: routes -> scheduler -> engine -> lora layers. The engine
never imports starlette; server/ never imports trainer/ (adapters reach it through the store).
"""
