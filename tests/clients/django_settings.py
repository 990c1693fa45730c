"""Django settings for the client tests, configured once per process (``settings.configure`` cannot run twice,
and models cannot be imported before it): the small invoice app and django-ledger with what it needs."""

from __future__ import annotations

# alias -> test login role: ``default`` is the application, ``controller`` a member of ledgerlock_controller,
# ``owner`` the installer (runs django-ledger's migrations and protects its tables, as a DBA would)
DJANGO_ALIASES = {"default": "app", "controller": "controller", "owner": "owner"}

SETTINGS = {
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "ll_erp_django.apps.ErpConfig",
        "django_ledger",
    ],
    # psycopg 3 is the driver (Django >= 4.2 picks it when installed): no psycopg2 build
    "DATABASES": {alias: {"ENGINE": "django.db.backends.postgresql", "NAME": "unset"} for alias in DJANGO_ALIASES},
    "USE_TZ": True,
    "TIME_ZONE": "UTC",
    # django-ledger caches closing-entry digests; a per-process memory cache keeps tests apart from each other
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
}
