-- chom: least-loaded eligible VPS from chom_vps_load (autocommit: nothing stays reserved)
SELECT chom_pick_vps();
