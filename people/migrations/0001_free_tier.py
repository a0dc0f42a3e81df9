"""The tier a self-signed-up account gets (GHOSTGPT_SIGNUP_TIER): no larger than the
anonymous one, so signing up again gains nothing."""

from __future__ import annotations

from django.db import migrations


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    Tier = apps.get_model("chat", "Tier")
    Tier.objects.get_or_create(name="free", defaults={"rpm": 10, "tpm": 30_000})


class Migration(migrations.Migration):
    dependencies = [("chat", "0016_key_person_and_web_session")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
