"""The tier anonymous browser sessions get (GHOSTGPT_SESSION_TIER): a little below regular."""

from django.db import migrations


def seed(apps, schema_editor):
    Tier = apps.get_model("chat", "Tier")
    Tier.objects.get_or_create(name="anonymous", defaults={"rpm": 10, "tpm": 30_000})


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_web_product")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
