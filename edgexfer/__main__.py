from edgexfer.cli import main

main()
