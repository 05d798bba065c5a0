"""Lookup keys and the on-disk table format, shared by the table builder (tools/) and the
device's reader (edge/lookup/)."""

from edgecascade.shared.lookup.keys import KEY_BYTES, KeyScheme, application_key, content_key
from edgecascade.shared.lookup.table_file import TableFile, TableMeta, write_table

__all__ = [
    "KEY_BYTES",
    "KeyScheme",
    "TableFile",
    "TableMeta",
    "application_key",
    "content_key",
    "write_table",
]
