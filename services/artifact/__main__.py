from trackd_services.artifact.app import main

main()
