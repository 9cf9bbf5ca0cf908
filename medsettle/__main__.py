from medsettle.cli import main

# Guarded: the writer process (spawn) may import this module without running the CLI.
if __name__ == "__main__":
    main()
