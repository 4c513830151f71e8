"""The classroom: devices publish their state to an MQTT broker; instructors watch every desk."""
