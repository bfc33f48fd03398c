from pulse_pipeline_demo.demo import main

main()
