"""Ray Serve: ``config`` (pydantic ⇄ YAML), ``ingress`` (HTTP), ``replica`` (model + cross-request
batching), ``autoscaling`` (policies run by the Serve controller), ``app`` (``build_app``: applies
Serve's decorators to the plain classes).
"""
