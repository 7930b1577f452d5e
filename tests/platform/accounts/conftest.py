"""Fixtures for accounts tests. ``assert_isolated`` lives in llmops.accounts.testing so every
app's tests can import it; the fixture here is a convenience for this folder."""

from __future__ import annotations

import pytest

from llmops.accounts.models import Membership, Role
from llmops.accounts.testing import assert_isolated as _assert_isolated


@pytest.fixture
def assert_isolated():
    return _assert_isolated


def own_workspace(user):
    return Membership.objects.get(user=user, role=Role.OWNER).workspace


@pytest.fixture
def workspace(user):
    return own_workspace(user)


@pytest.fixture
def foreign_workspace(other_user):
    return own_workspace(other_user)


@pytest.fixture
def bearer(api_token):
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # Users are created in nearly every test; the real hasher costs most of the run time here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
