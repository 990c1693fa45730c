from django.apps import AppConfig


class ErpConfig(AppConfig):
    name = "ll_erp_django"
    default_auto_field = "django.db.models.AutoField"
