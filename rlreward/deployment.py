"""Deprecated location of the serving API; use :mod:`rlreward.serving.app` / :mod:`rlreward.serving.config`.

Kept so that ``import_path: rlreward.serving.app:build_app`` in existing ``serve deploy`` files and
``from rlreward.deployment import AppConfig, build_app, deploy`` keep working, with a warning.
"""

from __future__ import annotations

import warnings

from rlreward.serving.app import build_app, deploy
from rlreward.serving.config import AppConfig, load_app_config

__all__ = ["AppConfig", "build_app", "deploy", "load_app_config"]

warnings.warn(
    "rlreward.deployment is deprecated: import build_app/deploy from rlreward.serving.app and "
    "AppConfig/load_app_config from rlreward.serving.config (serve deploy: "
    "import_path rlreward.serving.app:build_app)",
    DeprecationWarning,
    stacklevel=2,
)
