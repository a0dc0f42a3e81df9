import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_seed_anonymous_tier"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="kind",
            field=models.CharField(
                choices=[("api", "API key"), ("session", "Browser session"), ("agent", "Agent token")],
                default="api",
                max_length=8,
            ),
        ),
        migrations.CreateModel(
            name="AgentConnection",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("name", models.CharField(blank=True, max_length=100)),
                ("channel_name", models.CharField(max_length=200)),
                ("model_ids", models.JSONField(blank=True, default=list, help_text="What the agent says it serves.")),
                ("parallel", models.PositiveSmallIntegerField(default=1, help_text="Jobs it takes at once.")),
                ("in_flight", models.PositiveIntegerField(default=0)),
                ("served", models.PositiveIntegerField(default=0)),
                ("connected_at", models.DateTimeField(auto_now_add=True)),
                ("heartbeat_at", models.DateTimeField()),
                ("last_message_at", models.DateTimeField(blank=True, null=True)),
                ("disconnected_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                (
                    "key",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="agent_connections",
                        to="chat.apikey",
                    ),
                ),
            ],
            options={"ordering": ["-connected_at"]},
        ),
    ]
