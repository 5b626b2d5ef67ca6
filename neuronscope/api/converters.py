"""URL converters that keep variable segments from shadowing the fixed routes beside them."""

from flask import Flask
from werkzeug.routing import BaseConverter, PathConverter


class ModelNameConverter(PathConverter):
    """A model name (Hub ids contain one '/'); never the fixed routes ``memory`` or ``switch``."""

    regex = r"(?!(?:memory|switch)$)[^/].*?"


class JsonFileConverter(BaseConverter):
    """A result file name ending in ``.json`` (so ``files``, ``generate``, ... stay fixed routes).

    The name is validated again by the storage layer; this only routes.
    """

    regex = r"[^/]+\.json"


def register_converters(app: Flask) -> None:
    app.url_map.converters.update(model_name=ModelNameConverter, json_file=JsonFileConverter)
