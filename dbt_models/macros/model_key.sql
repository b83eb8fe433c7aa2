{#- One spelling of a tracker model across vendors: Navixy says "telfmc130"/"aovxc2", Teltonika
    FOTA "FMC130", Telesto's SKU "TRK-FMC130", Tracksolid "GT06E". -#}
{% macro model_key(model) -%}
    upper(regexp_replace(regexp_replace({{ model }}, '^TRK-', ''), '^tel', ''))
{%- endmacro %}
