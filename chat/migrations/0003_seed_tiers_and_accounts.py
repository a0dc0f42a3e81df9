"""Default tiers (RPM from OhMyGPT: regular 12, VIP 60, premium 90) and an account for
every key created before accounts existed."""

from django.db import migrations

TIERS = [("regular", 12, 40_000), ("vip", 60, 200_000), ("premium", 90, 400_000), ("unlimited", None, None)]


def seed(apps, schema_editor):
    Tier = apps.get_model("chat", "Tier")
    Account = apps.get_model("chat", "Account")
    ApiKey = apps.get_model("chat", "ApiKey")
    for name, rpm, tpm in TIERS:
        Tier.objects.get_or_create(name=name, defaults={"rpm": rpm, "tpm": tpm})
    regular = Tier.objects.get(name="regular")
    for key in ApiKey.objects.filter(account__isnull=True):
        key.account = Account.objects.create(name=key.name, tier=regular)
        key.save(update_fields=["account"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_accounts_billing")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
