from trackd_services.run.app import main

main()
