"""The hardware around the loop: LED/buzzer indicators, the systemd watchdog, the technician self-test."""
