"""Rotating the HS256 secret without a failed call (docs/deployment.md): FXPLAT_AUTH_ACCEPT_SECRET is a second secret
whose tokens are accepted too. A rotation is three rollouts; during each one, pods of the stage before and after run
side by side, and every token either mints must pass either's check."""
from __future__ import annotations

import secrets

import pytest

from fxplat.catalog import BuildContext, build_host
from services.common.errors import Unauthenticated
from test_auth import QUERY, market_clients
from transport.auth import AuthConfig, AuthConfigError
from transport.client_factory import ClientFactory

OLD, NEW, OTHER = (secrets.token_hex(32) for _ in range(3))


def stage(secret: str, accept: str | None = None) -> AuthConfig:
    env = {"FXPLAT_AUTH": "on", "FXPLAT_AUTH_SECRET": secret}
    if accept:
        env["FXPLAT_AUTH_ACCEPT_SECRET"] = accept
    return AuthConfig.from_env(env=env)


ROTATION = [stage(OLD), stage(OLD, accept=NEW), stage(NEW, accept=OLD), stage(NEW)]


def accepted(signer: AuthConfig, verifier: AuthConfig) -> bool:
    token = signer.service_tokens(["market:read"])()
    try:
        verifier.verifier().check(f"Bearer {token}", "market:read")
        return True
    except Unauthenticated:
        return False


@pytest.mark.parametrize("step", [1, 2, 3])
def test_during_each_rollout_old_and_new_pods_accept_each_others_tokens(step):
    before, after = ROTATION[step - 1], ROTATION[step]
    for signer in (before, after):
        for verifier in (before, after):
            assert accepted(signer, verifier)


def test_swapping_the_secret_in_one_rollout_would_fail_calls():
    assert not accepted(ROTATION[0], ROTATION[3]) and not accepted(ROTATION[3], ROTATION[0])


def test_an_accepted_secret_does_not_let_other_keys_in_nor_sign():
    forger = AuthConfig(mode="on", secret=OTHER)
    assert not accepted(forger, ROTATION[2])
    assert ROTATION[1].signer().key == OLD  # the new secret is only accepted until it becomes FXPLAT_AUTH_SECRET


def test_configuration_errors_say_what_to_set():
    with pytest.raises(AuthConfigError, match="FXPLAT_AUTH_SECRET beside it"):
        AuthConfig.from_env(env={"FXPLAT_AUTH": "on", "FXPLAT_AUTH_ACCEPT_SECRET": NEW})
    with pytest.raises(AuthConfigError, match="at least 32 characters"):
        stage(NEW, accept="short")


async def test_a_service_mid_rotation_accepts_both_keys_on_both_transports(data_dir, tmp_path):
    host = await build_host("market_analysis", BuildContext(data_dir, auth=ROTATION[2].for_serving(tmp_path)),
                            "127.0.0.1", 0, 0)
    await host.start()
    try:
        async with ClientFactory() as bare:
            for secret in (OLD, NEW):
                token = AuthConfig(mode="on", secret=secret).signer().mint(sub="t", scopes=["market:read"], ttl_s=60)
                for wire, client in market_clients(host, bare, f"Bearer {token}").items():
                    assert len((await client.get_candles(QUERY)).series) == 5, wire
            forged = AuthConfig(mode="on", secret=OTHER).signer().mint(sub="t", scopes=["market:read"], ttl_s=60)
            for client in market_clients(host, bare, f"Bearer {forged}").values():
                with pytest.raises(Unauthenticated, match="invalid token"):
                    await client.get_candles(QUERY)
    finally:
        await host.stop(grace=0)
