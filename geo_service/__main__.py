"""`python -m geo_service` runs the `geo-service` command."""

from geo_service.cli import main

main()
