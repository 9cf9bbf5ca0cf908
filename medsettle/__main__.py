from medsettle.cli import main

main()
