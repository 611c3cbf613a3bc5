"""What happens without anyone clicking: sensors and automation conditions."""
