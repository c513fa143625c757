"""The base config: every field and its default (cfcls/config_schema.py).

Config files start from `get_config()` and override a few fields. The schema
lives in the package so that an installed cfcls validates configs without
this folder.
"""

from cfcls.config_schema import get_config  # pylint: disable=unused-import
