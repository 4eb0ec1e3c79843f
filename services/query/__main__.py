from trackd_services.query.app import main

main()
