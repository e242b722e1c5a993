"""Where npdl's Ray launchers look for the token, and what they refuse (no Ray started)."""

import os

import pytest
from hydra.errors import CompactHydraException

from hydra_plugins.npdl_launchers.ray_token import find_token_source, require_token_mode

# Hydra's plugin scan (run by other tests in this process) re-executes the plugin
# modules, which makes a new RayAuthError class: match its base, which stays.
RayAuthError = CompactHydraException


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def test_token_mode_is_set_when_unset_and_any_other_mode_is_refused(clean_env):
    require_token_mode()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    clean_env.setenv("RAY_AUTH_MODE", "off")
    with pytest.raises(RayAuthError, match=r"^RAY_AUTH_MODE=off: npdl's Ray launchers run only"):
        require_token_mode()


def test_the_token_is_found_where_ray_looks_for_it(clean_env, tmp_path):
    with pytest.raises(RayAuthError, match="no Ray authentication token for this sweep: set RAY"):
        find_token_source()
    default = tmp_path / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("a" * 64)
    default.chmod(0o600)
    assert find_token_source() == str(default)
    named = tmp_path / "token"
    named.write_text("b" * 64)
    named.chmod(0o600)
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert find_token_source() == f"RAY_AUTH_TOKEN_PATH={named}"
    clean_env.setenv("RAY_AUTH_TOKEN", "c" * 64)
    assert find_token_source() == "RAY_AUTH_TOKEN"


def test_a_token_path_naming_a_missing_or_empty_file_is_refused_naming_it(clean_env, tmp_path):
    missing = tmp_path / "missing"
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(missing))
    with pytest.raises(RayAuthError, match=rf"RAY_AUTH_TOKEN_PATH={missing} cannot be read"):
        find_token_source()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(empty))
    with pytest.raises(RayAuthError, match=rf"RAY_AUTH_TOKEN_PATH={empty} is empty; set"):
        find_token_source()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_token_file_other_users_can_read_is_refused_with_the_chmod_to_run(clean_env, tmp_path):
    default = tmp_path / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("a" * 64)
    default.chmod(0o644)
    with pytest.raises(RayAuthError) as refused:
        find_token_source()
    real = default.resolve()
    assert str(refused.value) == (
        f"the Ray token file {real} (the default token file) is open to other users "
        f"(mode 0644); run `chmod 600 {real}`"
    )
    default.chmod(0o600)
    assert find_token_source() == str(default)

    named = tmp_path / "token"
    named.write_text("b" * 64)
    named.chmod(0o640)
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    with pytest.raises(RayAuthError) as refused:
        find_token_source()
    real = named.resolve()
    assert str(refused.value) == (
        f"the Ray token file {real} (RAY_AUTH_TOKEN_PATH) is open to other users "
        f"(mode 0640); run `chmod 600 {real}`"
    )
    named.chmod(0o600)
    assert find_token_source() == f"RAY_AUTH_TOKEN_PATH={named}"
