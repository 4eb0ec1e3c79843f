from trackd_services.hpo.app import main

main()
