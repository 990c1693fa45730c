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
        "django.contrib.sessions",
        "django.contrib.messages",
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
    # what django-ledger's own tests need of a project: its views, behind a login
    "ROOT_URLCONF": "ll_urls",
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                           "django.contrib.auth.context_processors.auth",
                                           "django.contrib.messages.context_processors.messages"]},
    }],
    "SECRET_KEY": "ledgerlock-client-tests-only",
    "ALLOWED_HOSTS": ["testserver"],
    "LOGIN_URL": "/ledger/auth/login/",
}
