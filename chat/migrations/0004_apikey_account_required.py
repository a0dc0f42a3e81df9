import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_seed_tiers_and_accounts")]
    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="account",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="keys", to="chat.account"),
        ),
    ]
