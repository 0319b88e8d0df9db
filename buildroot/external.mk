include $(sort $(wildcard $(BR2_EXTERNAL_MACULA_PATH)/package/*/*.mk))
