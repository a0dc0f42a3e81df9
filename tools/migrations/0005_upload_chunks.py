import django.db.models.deletion
from django.db import migrations, models


def drop_whole_uploads(apps, schema_editor):
    """Uploads stored whole (a job queued across the upgrade) cannot be read in pieces: they
    go, and their jobs answer 410 upload_gone ("upload it again")."""
    apps.get_model("tools", "Upload").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tools", "0004_upload_no_suffix"),
    ]

    operations = [
        migrations.RunPython(drop_whole_uploads, migrations.RunPython.noop),
        migrations.RemoveField(model_name="upload", name="data"),
        migrations.AddField(
            model_name="upload",
            name="chunk_bytes",
            field=models.PositiveIntegerField(default=1048576, help_text="The size of every piece but the last."),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name="UploadChunk",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveIntegerField()),
                ("data", models.BinaryField()),
                (
                    "upload",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="chunks", to="tools.upload"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("upload", "index"), name="upload_chunk_once")],
            },
        ),
    ]
