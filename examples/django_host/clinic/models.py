"""The clinic's data: practices, their staff (``django.contrib.auth`` users), clients,
bookings, and which apps each practice has switched on in the app menu."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Practice(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    locale = models.CharField(max_length=5, default="sv")

    def __str__(self) -> str:
        return self.name


class StaffMember(models.Model):
    """A user who works at a practice."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="staff")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="staff")
    is_owner = models.BooleanField(default=False)
    #: May record consent given on paper or by voice.
    can_record_consent = models.BooleanField(default=True)


class Client(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=120)
    email = models.EmailField()
    #: The address in lower case: one client per address and practice.
    email_key = models.CharField(max_length=254)
    locale = models.CharField(max_length=5, default="sv")
    created_at = models.DateTimeField()

    class Meta:
        constraints = (models.UniqueConstraint(fields=["practice", "email_key"],
                                               name="clinic_client_one_per_email"),)
        ordering = ("name", "id")


class Booking(models.Model):
    CHANNELS = (("online", "online"), ("staff", "staff"))

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="bookings")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="bookings")
    starts_at = models.DateTimeField()
    channel = models.CharField(max_length=10, choices=CHANNELS)
    created_at = models.DateTimeField()

    class Meta:
        constraints = (models.UniqueConstraint(fields=["practice", "starts_at"],
                                               name="clinic_booking_one_per_slot"),)


class AppActivation(models.Model):
    """An installed app switched on (or off again) for a practice in the app menu."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="apps")
    app_key = models.CharField(max_length=64)
    active = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = (models.UniqueConstraint(fields=["practice", "app_key"],
                                               name="clinic_app_once_per_practice"),)
