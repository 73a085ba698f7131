"""E-mail: the outbox relay, its SMTP transport and the messages it renders."""
