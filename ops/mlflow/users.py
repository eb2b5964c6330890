"""Create (or reset the password of) MLflow basic-auth users, as the admin.

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \\
    MLFLOW_PASSWORD_TRAINER=... MLFLOW_PASSWORD_READER=... \\
        python ops/mlflow/users.py http://127.0.0.1:5050 trainer reader

Passwords come from MLFLOW_PASSWORD_<NAME> variables, never from the command line (which other
users of the machine can read). With the server's default_permission = READ, every signed-in
user reads the registry and may create experiments and models of its own (it manages what it
created); nobody writes anything without signing in. Used by `SECURE=1 ops/services.sh up` and
the compose file's `mlflow-users` service.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("users", nargs="+")
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    client = get_app_client("basic-auth", tracking_uri=args.tracking_uri)
    for user in args.users:
        password = os.environ.get(f"MLFLOW_PASSWORD_{user.upper()}")
        if not password:
            print(f"error: MLFLOW_PASSWORD_{user.upper()} is not set", file=sys.stderr)
            return 2
        try:
            client.create_user(user, password)
            print(f"created MLflow user {user}")
        except MlflowException as exc:
            if "already exists" not in str(exc):
                raise
            client.update_user_password(user, password)
            print(f"reset the password of MLflow user {user}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
