from trackd_services.web.app import main

main()
