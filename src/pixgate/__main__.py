from pixgate.cli import main

main()
