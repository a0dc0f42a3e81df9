"""Django's SQLite backend on a SQLite that can load extensions, with sqlite-vec loaded.

The Python this project runs on may be built without `enable_load_extension` (pyenv's and
some distributions' are), and its SQLite may be older than FTS5's `contentless_delete`
(3.43). `pysqlite3-binary` is the standard library's sqlite3 module built against a recent
SQLite of its own with extension loading on; every connection Django opens here loads
sqlite-vec (the `vec0` virtual table: documents' passage vectors). Everything else is
Django's own SQLite backend: the same converters and adapters are registered on this
module, and the cursor translates Django's `%s` placeholders as Django's does.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from itertools import tee
from typing import Any

import sqlite_vec
from django.db.backends.sqlite3 import base
from django.db.backends.sqlite3._functions import register as register_functions
from django.utils.asyncio import async_unsafe
from django.utils.dateparse import parse_date, parse_datetime, parse_time
from pysqlite3 import dbapi2 as Database  # noqa: N812  (Django's name for it)

Database.register_converter("bool", b"1".__eq__)
Database.register_converter("date", base.decoder(parse_date))
Database.register_converter("time", base.decoder(parse_time))
Database.register_converter("datetime", base.decoder(parse_datetime))
Database.register_converter("timestamp", base.decoder(parse_datetime))
Database.register_adapter(decimal.Decimal, str)
Database.register_adapter(datetime.date, base.adapt_date)
Database.register_adapter(datetime.datetime, base.adapt_datetime)


class CursorWrapper(Database.Cursor):  # type: ignore[misc]
    """Django's SQLiteCursorWrapper, on this module's cursor."""

    convert_query = base.SQLiteCursorWrapper.convert_query

    def execute(self, query: str, params: Any = None) -> Any:
        if params is None:
            return super().execute(query)
        names = list(params) if isinstance(params, Mapping) else None
        return super().execute(self.convert_query(query, param_names=names), params)

    def executemany(self, query: str, param_list: Any) -> Any:
        peek, param_list = tee(iter(param_list))
        first = next(peek, None)
        names = list(first) if first and isinstance(first, Mapping) else None
        return super().executemany(self.convert_query(query, param_names=names), param_list)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = Database

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params["detect_types"] = Database.PARSE_DECLTYPES | Database.PARSE_COLNAMES
        return params

    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        conn = Database.connect(**conn_params)
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        register_functions(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA legacy_alter_table = OFF")
        for command in self.init_commands:
            if command := command.strip():
                conn.execute(command)
        return conn

    def create_cursor(self, name: str | None = None) -> Any:
        return self.connection.cursor(factory=CursorWrapper)
