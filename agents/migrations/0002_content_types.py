from django.db import migrations

MODELS = ("team", "skill", "agentprofile", "agentskill")


def _move(apps, schema_editor, old: str, new: str) -> None:
    """The models' content types follow them to their new app label: the permissions (change_agentprofile, ...),
    the groups that hold them (Supervisors, Admins) and the admin's log keep pointing at the same rows."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        if ContentType.objects.using(db).filter(app_label=new, model=model).exists():
            continue  # already there (created by a migrate that ran before this one): left as it is
        ContentType.objects.using(db).filter(app_label=old, model=model).update(app_label=new)


def forwards(apps, schema_editor):
    _move(apps, schema_editor, "routing", "agents")


def backwards(apps, schema_editor):
    _move(apps, schema_editor, "agents", "routing")


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
