"""Hydra's Ray launcher with Ray's token authentication, never without it.

A Ray cluster without authentication runs any code anyone who reaches its ports sends
it. These launchers therefore refuse ``RAY_AUTH_MODE`` other than ``token`` and set it
when it is unset:

- :class:`TokenRayLauncher` (``hydra/launcher=ray_cluster``) joins a running cluster.
  This process needs the cluster's token, found as Ray finds it: ``RAY_AUTH_TOKEN``,
  else the file ``RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token``. A missing or
  unreadable token, a token file other users may read (mode not 0600), or a token the
  head refuses, ends the sweep with one line saying what to do, instead of Ray's
  traceback.
- :class:`PrivateRayLauncher` (``hydra/launcher=ray_local``) starts a Ray for this
  sweep alone, with a fresh random token in a private file (0600) inside Ray's
  temporary folder (``ray.init._temp_dir``, else the system's), removed when the
  process ends. Every socket of that Ray listens on 127.0.0.1 only
  (:func:`bind_ray_to_loopback`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import CompactHydraException

try:
    import ray
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
except ImportError:  # the [ray] extra is not installed: no Ray launchers
    RayLauncher = None

TOKEN_HELP = (
    "set RAY_AUTH_TOKEN_PATH to a file holding the cluster's token (`ray get-auth-token` "
    "on the head prints it), or RAY_AUTH_TOKEN to the token, or copy it to ~/.ray/auth_token"
)


class RayAuthError(CompactHydraException):
    """Token authentication is off, or this process has no usable token (one line)."""


def require_token_mode() -> None:
    """Set ``RAY_AUTH_MODE=token`` for this process; refuse any other mode."""
    mode = os.environ.get("RAY_AUTH_MODE", "").strip()
    if mode not in ("", "token"):
        raise RayAuthError(
            f"RAY_AUTH_MODE={mode}: npdl's Ray launchers run only with token "
            "authentication; set RAY_AUTH_MODE=token on every node and in this shell"
        )
    os.environ["RAY_AUTH_MODE"] = "token"


def reload_ray_auth_settings() -> None:
    """Make this process's Ray see the authentication environment as it is now.

    Ray reads ``RAY_AUTH_MODE`` and the token once, when it is imported (Hydra's plugin
    scan imports it); Ray's own ``ray.init`` refreshes them the same way after it
    changes the mode.
    """
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def bind_ray_to_loopback() -> None:
    """Make every process of the Ray that this process starts listen on 127.0.0.1 only.

    Ray's servers (GCS, raylet and object manager, workers, dashboard, dashboard agent,
    metrics and runtime-env agents, autoscaler monitor) listen on loopback only when the
    node's address is loopback, else on every interface or the node's address. Ray keeps
    a loopback node address (``ray.init``'s ``_node_ip_address=127.0.0.1``) only in its
    single-machine mode, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the default on macOS
    and Windows); otherwise it replaces it by the machine's outward address. This sets
    that mode for the Ray processes started from here, and for this process, whose Ray
    read the variable when Hydra's plugin scan imported it.
    """
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def find_token_source() -> str:
    """Where Ray will read this process's token from (for messages).

    Raises
    ------
    RayAuthError
        No token anywhere Ray looks; ``RAY_AUTH_TOKEN_PATH`` names a file that is
        missing, unreadable or empty; or the token file is open to other users.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        try:
            if Path(named).read_text().strip():
                refuse_shared_token_file(Path(named), "RAY_AUTH_TOKEN_PATH")
                return f"RAY_AUTH_TOKEN_PATH={named}"
        except OSError as error:
            raise RayAuthError(
                f"RAY_AUTH_TOKEN_PATH={named} cannot be read ({error.strerror}); {TOKEN_HELP}"
            ) from None
        raise RayAuthError(f"RAY_AUTH_TOKEN_PATH={named} is empty; {TOKEN_HELP}")
    default = Path.home() / ".ray" / "auth_token"
    with contextlib.suppress(OSError):
        if default.read_text().strip():
            refuse_shared_token_file(default, "the default token file")
            return str(default)
    raise RayAuthError(f"no Ray authentication token for this sweep: {TOKEN_HELP}")


def refuse_shared_token_file(path: Path, which: str) -> None:
    """Refuse a token file that users other than its owner may read or write (POSIX).

    Whoever reads the token can run code on every node of the cluster.
    """
    if os.name != "posix":
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        real = path.resolve()
        raise RayAuthError(
            f"the Ray token file {real} ({which}) is open to other users (mode {mode:04o}); "
            f"run `chmod 600 {real}`"
        )


if RayLauncher is not None:

    class TokenRayLauncher(RayLauncher):
        """Hydra's Ray launcher joining a cluster that uses token authentication."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
            if ray.is_initialized():  # a later batch of the same sweep
                return super().launch(job_overrides, initial_job_idx)
            source = self.authenticate()
            reload_ray_auth_settings()
            address = self.ray_cfg.init.get("address") or "a new local Ray"
            try:
                return super().launch(job_overrides, initial_job_idx)
            except ray.exceptions.AuthenticationError as error:
                raise RayAuthError(f"Ray refused the token: {error}; {TOKEN_HELP}") from None
            except ConnectionError as error:
                if ray.is_initialized():
                    raise  # lost the cluster mid-sweep: not a question of the token
                raise RayAuthError(
                    f"cannot join the Ray cluster at {address} with the token from {source}: "
                    f"the head refused it or is not there ({error}); {TOKEN_HELP}, and "
                    "check hydra.launcher.ray.init.address"
                ) from None

        def authenticate(self) -> str:
            """Check this process can authenticate; return where its token comes from."""
            require_token_mode()
            return find_token_source()

    class PrivateRayLauncher(TokenRayLauncher):
        """Starts a Ray for this sweep only, on loopback, with a fresh private token."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
            if not ray.is_initialized():
                bind_ray_to_loopback()
            return super().launch(job_overrides, initial_job_idx)

        def authenticate(self) -> str:
            require_token_mode()
            folder = Path(self.ray_cfg.init.get("_temp_dir") or tempfile.gettempdir())
            folder.mkdir(parents=True, exist_ok=True)
            # mkstemp: a new file only this user can read, never one planted there.
            fd, token_path = tempfile.mkstemp(prefix="npdl-auth-token.", dir=folder)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            atexit.register(_remove, token_path)
            os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
            os.environ["RAY_AUTH_TOKEN_PATH"] = token_path
            return f"RAY_AUTH_TOKEN_PATH={token_path}"


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
