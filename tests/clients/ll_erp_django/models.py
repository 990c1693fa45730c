"""The demo invoice tables as an application declares them. The schema is the database's (managed = False)."""

from django.db import models


class DatabaseAssignedText(models.TextField):
    """A column the database fills in on INSERT (the final number): Django reads it back with RETURNING on
    create() and bulk_create(). Updates are not RETURNING in Django: refresh_from_db() after finalizing."""

    db_returning = True


class Invoice(models.Model):
    company_id = models.IntegerField()
    number = DatabaseAssignedText(null=True)
    status = models.TextField(default="draft")
    issued_on = models.DateField()
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    paid = models.BooleanField(default=False)
    reconciled = models.BooleanField(default=False)
    note = models.TextField(null=True)
    updated = models.DateTimeField(auto_now=True)  # declared mutable: save() of a final invoice may touch it

    class Meta:
        db_table = "invoice"
        managed = False


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.DO_NOTHING, related_name="lines")
    description = models.TextField()
    quantity = models.DecimalField(max_digits=12, decimal_places=3, default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2, default=0)

    class Meta:
        db_table = "invoice_line"
        managed = False
