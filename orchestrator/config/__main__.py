from orchestrator.config.reference import main

main()
