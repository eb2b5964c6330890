"""The analyst console: a web application to work the alert queue (`fraud console`).

    serve(settings)                        # read alerts/decisions/feedback, serve the pages
    analyst_line("a.smith", password)      # an entry for the analysts file

`store` (SQLite: what was read, verdicts, claims, sessions) is fed by `ingest`; `web` serves
the pages (with `auth`: sessions and CSRF; `pages` and `explain`: what they show, pure);
`accounts` keeps the password hashes; `run` starts and stops it all.
"""

from console.accounts import analyst_line, check_new_password, load_analysts, save_analyst
from console.run import serve

__all__ = ["analyst_line", "check_new_password", "load_analysts", "save_analyst", "serve"]
