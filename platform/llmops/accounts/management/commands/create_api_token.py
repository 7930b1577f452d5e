"""python manage.py create_api_token USERNAME [--name NAME]: print a new token, once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from llmops.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create a personal access token for USERNAME and print it (it cannot be shown again)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What the token is for.")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r} (create one with `manage.py createsuperuser`)")
        if not user.is_active:
            raise CommandError(f"user {username!r} is deactivated: its tokens would not work")
        try:
            token, secret = api_token_create(user=user, name=name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        # The secret alone on stdout, so `TOKEN=$(manage.py create_api_token demo)` works;
        # the explanation goes to stderr.
        self.stderr.write(
            f"Token {token.name!r} for {user.username} ({token.prefix}…). Shown once; only its hash is "
            "stored. Use it as: Authorization: Bearer <token>"
        )
        self.stdout.write(secret)
