"""The clinic's own Django app: practices, staff, clients, bookings and its pages."""
