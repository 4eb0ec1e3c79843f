from trackd_services.ingest.app import main

main()
