"""URLs for django-ledger's own tests (they reverse ``django_ledger:…`` names and request its views)."""

from django.urls import include, path

urlpatterns = [path("ledger/", include("django_ledger.urls", namespace="django_ledger"))]
