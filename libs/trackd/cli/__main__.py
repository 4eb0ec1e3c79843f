from trackd.cli import main

main()
