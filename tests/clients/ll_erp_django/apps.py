from django.apps import AppConfig


class ErpConfig(AppConfig):
    name = "ll_erp_django"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # django-ledger's je_number is written by ledgerlock when an entry is posted: have Django read it back
        # on INSERT (create, bulk_create), before anything computes the model's returning fields, so that an
        # entry inserted already posted (a closing entry) holds its final number and saves it back unchanged
        from django_ledger.models import JournalEntryModel

        number = JournalEntryModel._meta.get_field("je_number")
        number.__class__ = type("DatabaseNumberedSlugField", (type(number),), {"db_returning": True})
