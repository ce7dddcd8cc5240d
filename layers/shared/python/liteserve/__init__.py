"""liteserve: the serving core shared by every function (model runner, protocol codecs, keys, validation)."""

__version__ = "0.1.0"
