"""Local stand-ins for the outside world (DNS, SMTP receivers, mailboxes, SMS), on loopback."""
