from finsent_cli.main import main

main()
